# fixture=test
snapshot-info test t2
