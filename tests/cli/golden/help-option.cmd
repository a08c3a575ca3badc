# fixture=none
snapshot-info --help
