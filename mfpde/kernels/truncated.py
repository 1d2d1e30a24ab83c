"""placeholder"""
def truncated_sums(model, X, Y, weights, tolerance):
    from . import exact_sums
    return exact_sums(model, X, Y, weights)
