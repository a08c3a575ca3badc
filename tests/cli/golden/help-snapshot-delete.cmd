# fixture=none
help snapshot-delete
