# fixture=none
help snapshot-list
