# fixture=odd
snapshot-list vm1 --tree
