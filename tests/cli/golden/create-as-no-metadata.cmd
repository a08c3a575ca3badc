# fixture=test
snapshot-create-as test s1 --no-metadata
