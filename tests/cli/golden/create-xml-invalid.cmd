# fixture=test
snapshot-create test s1.xml
