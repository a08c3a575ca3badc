# fixture=vm1
snapshot-revert vm1
