# fixture=vm1
snapshot-list vm1 --tree --no-metadata
