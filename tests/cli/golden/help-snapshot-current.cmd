# fixture=none
help snapshot-current
