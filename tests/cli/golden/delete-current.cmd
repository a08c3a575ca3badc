# fixture=vm1
snapshot-delete vm1 --current; snapshot-current vm1 --name
