# fixture=test
snapshot-create test new.xml
