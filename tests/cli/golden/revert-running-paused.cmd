# fixture=test
snapshot-revert test t1 --running --paused
