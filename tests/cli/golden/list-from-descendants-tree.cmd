# fixture=vm1
snapshot-list vm1 --from base --descendants --tree
