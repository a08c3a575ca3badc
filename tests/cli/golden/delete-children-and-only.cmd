# fixture=vm1
snapshot-delete vm1 base --children --children-only
