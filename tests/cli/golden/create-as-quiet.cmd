# fixture=test virsh-options=-q
snapshot-create-as test s1
