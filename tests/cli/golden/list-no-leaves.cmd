# fixture=vm1
snapshot-list vm1 --no-leaves
