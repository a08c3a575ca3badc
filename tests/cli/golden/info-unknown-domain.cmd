# fixture=none
snapshot-info nodom base
