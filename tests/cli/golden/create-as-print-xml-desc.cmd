# fixture=test
snapshot-create-as test s1 'a <b> & "c"' --print-xml
