# fixture=test
snapshot-create-as test --name s1 --description 'my first'
