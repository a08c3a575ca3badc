# fixture=test
snapshot-create-as test t1
