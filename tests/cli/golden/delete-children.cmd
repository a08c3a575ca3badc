# fixture=vm1
snapshot-delete vm1 'after update' --children; snapshot-list vm1 --tree
