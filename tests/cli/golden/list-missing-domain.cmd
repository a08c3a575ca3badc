# fixture=none
snapshot-list
