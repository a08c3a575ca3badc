# fixture=vm1
snapshot-list vm1 --from 'after update' --tree
