# fixture=vm1
snapshot-delete vm1 base --children-only; snapshot-list vm1 --tree
