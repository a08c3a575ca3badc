# fixture=test
snapshot-delete test t1 --metadata
