# fixture=empty
snapshot-current vm1
