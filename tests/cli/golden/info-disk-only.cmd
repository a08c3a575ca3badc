# fixture=vm1
snapshot-info vm1 disk-only
