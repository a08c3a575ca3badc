# fixture=vm1
snapshot-info vm1 base
