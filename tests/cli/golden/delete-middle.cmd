# fixture=vm1
snapshot-delete vm1 'after update'; snapshot-list vm1 --tree
