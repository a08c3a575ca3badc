# fixture=none
help snapshot-parent
