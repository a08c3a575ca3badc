# fixture=none
help snapshot-edit
