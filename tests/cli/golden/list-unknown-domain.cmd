# fixture=none
snapshot-list nodom
