"""The networks (VGG now), their graph, parameters and forward pass, preprocessing, losses and weight porting."""
