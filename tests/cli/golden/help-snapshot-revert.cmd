# fixture=none
help snapshot-revert
