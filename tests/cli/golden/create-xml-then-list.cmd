# fixture=test
snapshot-create test new.xml; snapshot-list test --parent --name
