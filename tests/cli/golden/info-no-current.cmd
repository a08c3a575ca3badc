# fixture=empty
snapshot-info vm1 --current
