# fixture=test
snapshot-create-as test a/b
