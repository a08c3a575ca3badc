# fixture=none
help snapshot-info
