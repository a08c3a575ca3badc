# fixture=vm1
snapshot-delete vm1 alpha
