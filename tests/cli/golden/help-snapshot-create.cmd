# fixture=none
help snapshot-create
