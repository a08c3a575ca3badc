# fixture=empty
snapshot-list vm1
