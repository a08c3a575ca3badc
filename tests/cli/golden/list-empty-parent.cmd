# fixture=empty
snapshot-list vm1 --parent
