# fixture=vm1
snapshot-current vm1 base; snapshot-current vm1 --name; snapshot-info vm1 base
