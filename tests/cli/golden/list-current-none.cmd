# fixture=empty
snapshot-list vm1 --current
