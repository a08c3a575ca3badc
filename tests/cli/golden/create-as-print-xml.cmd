# fixture=test
snapshot-create-as test --print-xml
