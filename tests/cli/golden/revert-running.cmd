# fixture=test
snapshot-revert test t1
