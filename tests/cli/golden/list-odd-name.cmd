# fixture=odd
snapshot-list vm1 --name
