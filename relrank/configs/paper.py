"""The paper's protocol (Souri et al. 2016): VGG-16 fine-tuned end to end, batch 16 pairs, Lasagne's
RMSProp with backbone / head learning rates 1e-5 / 1e-4, L2 weight decay 1e-5 in the loss; the
paper's epochs per dataset (Zappos 25, LFW-10 40, OSR and PubFig 2). Meant for --weights=ImageNet VGG-16."""


def get_config(dataset: str) -> dict:
    del dataset  # the same for every dataset; epochs come from the dataset
    return dict(model="vgg16", batch_pairs=16, optimizer="rmsprop", schedule="constant",
                backbone_lr=1e-5, head_lr=1e-4, weight_decay=1e-5)
