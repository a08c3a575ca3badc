# fixture=vm1
snapshot-list vm1 --tree --topological
