# fixture=test
snapshot-create-as test 'with space'; snapshot-list test --name
