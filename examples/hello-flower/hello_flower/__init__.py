"""hello-flower: federated multinomial logistic regression on scikit-learn's digits."""
