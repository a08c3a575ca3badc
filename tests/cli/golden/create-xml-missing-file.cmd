# fixture=test
snapshot-create test missing.xml
