# fixture=empty
snapshot-list vm1 --name
