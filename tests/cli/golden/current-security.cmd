# fixture=vm1
snapshot-current vm1 --security-info
