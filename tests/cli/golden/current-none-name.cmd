# fixture=empty
snapshot-current vm1 --name
